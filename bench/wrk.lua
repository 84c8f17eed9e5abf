-- wrk script for the digestd benchmark. BENCH_PLAN names a plan file written by bench/load.ts:
-- line 1 is a unique prefix; then one step a line, tab-separated:
--   H <file of paths>   GET a random path from the file      N <bytes>   POST a new message
--   R <json body>       POST this body
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local function lines(file)
  local all = {}
  for line in io.lines(file) do all[#all + 1] = line end
  return all
end

function init(args)
  local plan = lines(os.getenv("BENCH_PLAN"))
  prefix = plan[1] .. "-t" .. tostring(id)
  steps = {}
  for index = 2, #plan do
    local kind, argument = plan[index]:match("^(%a)\t(.*)$")
    local step = { kind = kind }
    if kind == "H" then step.paths = lines(argument)
    elseif kind == "N" then step.bytes = tonumber(argument)
    else step.body = argument end
    steps[#steps + 1] = step
  end
  math.randomseed(os.time() + id * 7919)
  position = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  position = position % #steps + 1
  local step = steps[position]
  if step.kind == "H" then
    return wrk.format("GET", step.paths[math.random(#step.paths)])
  elseif step.kind == "N" then
    counter = counter + 1
    local head = prefix .. "-" .. counter
    local pad = step.bytes - #head
    if pad < 0 then pad = 0 end
    return wrk.format("POST", "/messages", headers, '{"message":"' .. head .. string.rep("x", pad) .. '"}')
  end
  return wrk.format("POST", "/messages", headers, step.body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
