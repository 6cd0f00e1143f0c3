-- expect: shape mismatch: 1x3 and 1x2
local djinn = require "djinn"
local x = djinn.tensor{ 1, 2, 3 } + djinn.tensor{ 1, 2 }
