-- wrk script for the HTTP/1.1 bench: print exact latency percentiles (µs)
-- and the error counts in one parsable line, after wrk's own output.
-- With BENCH_PACE_MS set, each connection waits that long after a response
-- before it sends its next request: a moderate, steady request rate instead
-- of wrk's flat-out closed loop (wrk times a request from when it is sent).
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace and pace > 0 then
  delay = function() return pace end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d requests=%d duration_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
