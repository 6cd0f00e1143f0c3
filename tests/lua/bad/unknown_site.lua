-- expect: tensor: no site 'L3.resid_pst' (did you mean L3.resid_post?)
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
local s = m:session()
s:break_at("L3.resid_post")
s:start("Once upon a time", { n = 4 })
assert(s:continue() == "breakpoint")
print(s:tensor("L3.resid_pst"))
