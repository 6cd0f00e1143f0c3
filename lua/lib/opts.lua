-- opts.lua - the experiments' command lines: MODEL, then --name VALUE pairs
-- over a table of defaults.  A default that is a number takes a number; the
-- names in spec.strings take a string; spec.lists maps a name to "int" or
-- "string", a comma-separated list.  Anything else is refused.  Errors print
-- "PROG: message" and exit with status 2, as a command-line tool does.
--
--   local o, model = opts.parse("agents", arg, defaults,
--     { strings = { "device", "out" }, lists = { agents = "int" } })
local M = {}

function M.die(prog, msg)
  io.stderr:write(prog, ": ", msg, "\n")
  os.exit(2)
end

local function list(prog, v, kind)
  local out = {}
  for w in v:gmatch("[^,]+") do
    if kind == "int" then
      out[#out + 1] = math.tointeger(tonumber(w)) or M.die(prog, "not a number: " .. w)
    else
      out[#out + 1] = w
    end
  end
  return out
end

function M.parse(prog, argv, o, spec)
  local strings = {}
  for _, k in ipairs(spec.strings or {}) do strings[k] = true end
  local lists = spec.lists or {}
  local model = argv[1]
  if not model or model:sub(1, 2) == "--" then
    M.die(prog, "usage: djinn lua/exp/" .. prog .. ".lua MODEL [--options]")
  end
  local i = 2
  while i <= #argv do
    local a, v = argv[i], argv[i + 1]
    if a:sub(1, 2) ~= "--" or not v then M.die(prog, "expected --option VALUE, got '" .. a .. "'") end
    local k = a:sub(3):gsub("-", "_")
    if lists[k] then o[k] = list(prog, v, lists[k])
    elseif strings[k] then o[k] = v
    elseif type(o[k]) == "number" then
      o[k] = tonumber(v) or M.die(prog, "--" .. a:sub(3) .. " needs a number, got '" .. v .. "'")
    else M.die(prog, "unknown option '" .. a .. "'") end
    i = i + 2
  end
  return o, model
end

return M
