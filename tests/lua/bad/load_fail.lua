-- expect: djinn.load: models/nonexistent.gguf: no such file or directory
-- load returns nil, msg; assert turns it into an error: one line, no traceback
-- traceback: no
local djinn = require "djinn"
local m = assert(djinn.load("models/nonexistent.gguf"))
