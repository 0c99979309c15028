-- A filtered query sorted by a property, first page of 20, with one of 10 cities.
local cities = {"Berlin", "Lisbon", "Paris", "Madrid", "Rome", "Vienna", "Oslo", "Dublin", "Prague", "Athens"}
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("BASE_PATH") .. "/contact/query"
request = function()
  local city = cities[math.random(#cities)]
  local body = '{"filter": {"status": "active", "city": "' .. city .. '"}, ' ..
    '"sort": [{"property": "name", "direction": "asc"}], "limit": 20}'
  return wrk.format("POST", path, nil, body)
end
