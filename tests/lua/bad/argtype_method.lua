-- expect: bad argument #1 to 'step' (number expected, got string)
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
local s = m:session()
s:start("Once upon a time", { n = 4 })
s:step("many")
