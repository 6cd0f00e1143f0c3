-- expect: runtime.lua:5: attempt to index a nil value (local 'cfg')
local function f(cfg)
  -- a plain Lua error inside a function: the traceback names both frames
  local _ = 1
  return cfg.layers
end
f(nil)
