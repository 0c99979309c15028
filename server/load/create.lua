-- A durable create of a contact (every create commits with an fsync).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("BASE_PATH") .. "/contact"
local n = 0
request = function()
  n = n + 1
  local body = '{"default": {"name": "Load ' .. n .. '", "city": "Berlin", "status": "lead"}}'
  return wrk.format("POST", path, nil, body)
end
