-- expect: start: unknown option 'temprature' (options are n, temperature, top_p, seed, eos, bos)
local djinn = require "djinn"
local m = assert(djinn.load(arg[1] or "models/stories260K.gguf", { device = "cpu" }))
m:session():start("Once upon a time", { temprature = 0 })
