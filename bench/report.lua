-- wrk's report as one line of JSON (read by bench/bench.py): requests, errors and the latency
-- percentiles in microseconds.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'AFEMU-BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
