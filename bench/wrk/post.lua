-- wrk script of bench/api_bench.py: POST a JSON body, as the test merchant when BENCH_AUTH=1.
-- Run it with one thread (wrk -t1): order ids and Idempotency-Keys are not shared out between threads.
--   BENCH_PATH, BENCH_BODY  the request; "%ORDER%" in the body becomes the next id of BENCH_ORDERS_FILE
--   BENCH_ORDERS_FILE       unpaid order ids, one a line, each used once (an order takes one payment in flight)
--   BENCH_IDEM=1            a fresh Idempotency-Key on every request (BENCH_NONCE: unique across runs)
--   BENCH_READS=1           every other request is GET /api/v1/orders/<the order just paid>
-- done() prints one line "BENCH_JSON {...}" that api_bench.py reads.

local path, body = os.getenv("BENCH_PATH"), os.getenv("BENCH_BODY")
local orders_file = os.getenv("BENCH_ORDERS_FILE")
local idem, reads = os.getenv("BENCH_IDEM") == "1", os.getenv("BENCH_READS") == "1"
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local headers = { ["Content-Type"] = "application/json" }
if os.getenv("BENCH_AUTH") == "1" then
  headers["X-Api-Key"], headers["X-Api-Secret"] = "key_test_abc123", "secret_test_xyz789"
end
local orders, i, current, read_next, static = {}, 0, nil, false, nil

function init(args)
  if orders_file then
    for line in io.lines(orders_file) do orders[#orders + 1] = line end
  elseif not idem then
    static = wrk.format("POST", path, headers, body)  -- the same bytes every time: built once
  end
end

function request()
  if static then return static end
  if read_next then
    read_next = false
    return wrk.format("GET", "/api/v1/orders/" .. current, headers)
  end
  i, read_next = i + 1, reads
  local b, h = body, headers
  if orders_file then
    current = orders[(i - 1) % #orders + 1]
    b = string.gsub(body, "%%ORDER%%", current)
  end
  if idem then
    h = { ["Idempotency-Key"] = "bench-" .. nonce .. "-" .. i }
    for k, v in pairs(headers) do h[k] = v end
  end
  return wrk.format("POST", path, h, b)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
