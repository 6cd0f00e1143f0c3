-- expect: continue: the program is not being run
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
m:session():continue()
