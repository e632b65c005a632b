-- replay.lua: wrk script that replays a pre-generated request file (see loadtests/dataset.py).
--
--   wrk ... -s replay.lua URL -- FILE PATH OFFSET LIMIT
--
-- Each line of FILE is one POST to PATH: "token TAB x-forwarded-for TAB json body"; a token
-- "Bearer <jwt>" goes in Authorization, any other in X-Voter-Token.
-- Lines OFFSET .. OFFSET+LIMIT-1 are dealt round-robin to the threads, so no two requests of
-- a run repeat a line (a run that exhausts its share starts over and says so in "wrapped").
-- Requests are formatted in init(), before the clock starts. done() prints one line
-- "WRKJSON {...}" with counts by status, latency percentiles (microseconds) and the number
-- of lines each thread consumed, so that the next run can start after them.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local reqs = {}
local n, i = 0, 0
sent, wrapped = 0, 0
statuses = {}

function init(args)
  local file, path = args[1], args[2]
  local offset, limit = tonumber(args[3]), tonumber(args[4])
  local nthreads = tonumber(args[5])
  local lineno = 0
  for line in io.lines(file) do
    if lineno >= offset + limit then
      break
    end
    if lineno >= offset and (lineno - offset) % nthreads == tid then
      local token, xff, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      n = n + 1
      local headers = {
        ["Host"] = "127.0.0.1",
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json",
        ["User-Agent"] = args[6],
        ["X-Forwarded-For"] = xff,
      }
      if token:sub(1, 7) == "Bearer " then  -- a partner JWT
        headers["Authorization"] = token
      else
        headers["X-Voter-Token"] = token
      end
      reqs[n] = wrk.format("POST", path, headers, body)
    end
    lineno = lineno + 1
  end
  if n == 0 then
    error("no requests for thread " .. tid .. " in " .. file)
  end
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  sent = sent + 1
  return reqs[i]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  local sent_max, wraps = 0, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for code, count in pairs(s) do
      merged[code] = (merged[code] or 0) + count
    end
    local ts = t:get("sent") or 0
    if ts > sent_max then
      sent_max = ts
    end
    wraps = wraps + (t:get("wrapped") or 0)
  end
  local parts = {}
  for code, count in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"threads":%d,"sent_max_per_thread":%d,' ..
    '"wrapped":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d},' ..
    '"statuses":{%s}}\n',
    summary.requests, summary.duration, #threads, sent_max, wraps,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, table.concat(parts, ",")))
end
