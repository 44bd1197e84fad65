-- Hands every response's status, headers and body to Lua, as a load script
-- that checks answers does: wrk then spends more of its own CPU per
-- response, which changes how the front's and the client's work interleave.
local seen = 0

response = function(status, headers, body)
  if status == 200 and #body > 0 then
    seen = seen + 1
  end
end
