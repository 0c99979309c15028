-- GET a random contact out of the ids in $IDS_FILE.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
local base = os.getenv("BASE_PATH")
request = function()
  return wrk.format("GET", base .. "/contact/" .. ids[math.random(#ids)])
end
