-- wrk script for bench/api_bench.py: POST a JSON body, optionally with the test merchant's
-- credentials, a fresh Idempotency-Key per request, or a different order id per request.
--
-- Environment (set by api_bench.py):
--   BENCH_PATH         request path, e.g. /api/v1/orders
--   BENCH_BODY         JSON body; "%ORDER%" in it is replaced by the next order id (payments)
--   BENCH_AUTH         "1": send X-Api-Key / X-Api-Secret (BENCH_KEY / BENCH_SECRET)
--   BENCH_ORDERS_FILE  file with one order id per line, each used once (payments; the harness writes enough)
--   BENCH_IDEM         "1": a unique Idempotency-Key on every request
--   BENCH_NONCE        makes the idempotency keys of one wrk run unique across runs
--   BENCH_READS        "1": every other request is GET /api/v1/orders/<the order just paid> (with BENCH_ORDERS_FILE)
-- done() prints one line "BENCH_JSON {...}" with the figures api_bench.py reads.

local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY") or "{}"
local auth = os.getenv("BENCH_AUTH") == "1"
local idem = os.getenv("BENCH_IDEM") == "1"
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local orders_file = os.getenv("BENCH_ORDERS_FILE")
local reads = os.getenv("BENCH_READS") == "1"
local read_next = false

local headers = { ["Content-Type"] = "application/json" }
if auth then
  headers["X-Api-Key"] = os.getenv("BENCH_KEY") or "key_test_abc123"
  headers["X-Api-Secret"] = os.getenv("BENCH_SECRET") or "secret_test_xyz789"
end

local threads = {}
local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
  table.insert(threads, thread)
end

local orders = nil
local n_orders = 0
local i = 0
local static_request = nil

function init(args)
  local tid = thread_id or 0
  if orders_file then
    orders = {}
    for line in io.lines(orders_file) do
      if #line > 0 then
        n_orders = n_orders + 1
        orders[n_orders] = line
      end
    end
    -- threads start at different places in the list
    i = (tid * 7919) % n_orders
  end
  if not orders and not idem then
    static_request = wrk.format("POST", path, headers, body)
  end
  idem_prefix = "bench-" .. nonce .. "-" .. tid .. "-"
end

function request()
  if static_request then
    return static_request
  end
  if reads and read_next then
    read_next = false
    return wrk.format("GET", "/api/v1/orders/" .. orders[i], headers)
  end
  read_next = reads
  local b = body
  if orders then
    i = i + 1
    if i > n_orders then i = 1 end
    b = string.gsub(body, "%%ORDER%%", orders[i])
  end
  local h = headers
  if idem then
    i = i + 1
    h = {}
    for k, v in pairs(headers) do h[k] = v end
    h["Idempotency-Key"] = idem_prefix .. i
  end
  return wrk.format("POST", path, h, b)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
