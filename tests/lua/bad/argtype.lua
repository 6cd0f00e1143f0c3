-- expect: bad argument #1 to 'load' (string expected, got table)
local djinn = require "djinn"
djinn.load({ "models/stories260K.gguf" })
