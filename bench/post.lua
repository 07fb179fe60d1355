-- wrk script for the trustpub benchmark: POSTs one JSON body per request, taken in
-- order from a file of pre-built bodies (one per line), or GETs one path, and writes a
-- JSON summary.
--
-- Environment (set by bench/load.py):
--   BENCH_METHOD   POST (default) or GET
--   BENCH_BODIES   file of request bodies, one per line (POST only)
--   BENCH_PATH     request path
--   BENCH_AUTH     optional Authorization header value
--   BENCH_HEADER   optional extra header, "Name: value" (e.g. If-None-Match for a 304)
--   BENCH_THREADS  the -t value given to wrk (each thread takes every Nth body)
--   BENCH_OUT      where done() writes the JSON summary
--
-- With several threads, thread k sends bodies k, k+N, k+2N, ... so that no body is
-- sent twice before the file is exhausted (each exchange JWT is good for one use).
-- A thread that runs out wraps around and counts it in "wrapped": for the exchange
-- those requests are replays, and load.py refuses the run.

local threads = {}
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local next_id = 0

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   method = os.getenv("BENCH_METHOD") or "POST"
   if method == "" then
      method = "POST"
   end
   bodies = {}
   position = 0
   wrapped = 0
   local headers = {}
   path = os.getenv("BENCH_PATH")
   local auth = os.getenv("BENCH_AUTH")
   if auth and auth ~= "" then
      headers["Authorization"] = auth
   end
   local extra = os.getenv("BENCH_HEADER")
   if extra and extra ~= "" then
      local name, value = extra:match("^([^:]+):%s*(.*)$")
      headers[name] = value
   end
   request_headers = headers
   if method == "GET" then
      -- One request, the same every time: built once.
      get_request = wrk.format("GET", path, headers)
      return
   end
   headers["Content-Type"] = "application/json"
   local index = 0
   for line in io.lines(os.getenv("BENCH_BODIES")) do
      if index % thread_count == tid then
         table.insert(bodies, line)
      end
      index = index + 1
   end
   if #bodies == 0 then
      error("no request bodies for thread " .. tid)
   end
end

function request()
   if get_request then
      return get_request
   end
   position = position + 1
   if position > #bodies then
      position = 1
      wrapped = wrapped + 1
   end
   return wrk.format(method, path, request_headers, bodies[position])
end

function done(summary, latency, requests)
   local wraps = 0
   for _, thread in ipairs(threads) do
      wraps = wraps + (thread:get("wrapped") or 0)
   end
   local e = summary.errors
   local out = io.open(os.getenv("BENCH_OUT"), "w")
   out:write(string.format(
      '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}, ' ..
      '"wrapped": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, wraps))
   out:close()
end
