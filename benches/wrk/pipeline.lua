-- 16 requests written at once per connection and their 16 responses read
-- before the next batch: HTTP/1.1 pipelining as framework benchmarks drive
-- Rails behind a front server. wrk counts each response.
local depth = 16

init = function(args)
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil, nil)
  end
  pipelined = table.concat(batch)
end

request = function()
  return pipelined
end
