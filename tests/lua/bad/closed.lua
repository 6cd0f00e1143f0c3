-- expect: closed.lua:7: session is closed
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
local s = m:session()
s:start("Once upon a time", { n = 4 })
s:close()
s:continue()
