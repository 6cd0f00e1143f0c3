-- expect: session is closed
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
local s = m:session()
m:close() -- closes the sessions made on it
s:tokens()
