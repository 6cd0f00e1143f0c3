-- results.lua - writing experiment results: JSON through djinn.json (cJSON)
-- and CSV with RFC 4180 quoting.  Failures to open or write return nil, msg.
local djinn = require "djinn"

local M = {}

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok then return nil, werr end
  if not cok then return nil, cerr end
  return true
end

function M.json(value, indent)
  return djinn.json.encode(value, { indent = indent ~= false })
end

-- Write value as JSON (indented unless indent == false); "-" is stdout.
function M.write_json(path, value, indent)
  local text = M.json(value, indent) .. "\n"
  if path == "-" then io.write(text) return true end
  return write_file(path, text)
end

function M.read_json(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return djinn.json.decode(text)
end

local function field(v)
  if v == nil then return "" end
  if v == djinn.json.null then return "" end
  local s
  if math.type(v) == "float" then s = ("%.17g"):format(v) else s = tostring(v) end
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- One CSV line (no newline) from a list of n values (n defaults to #values;
-- give it when some are nil).
function M.csv_line(values, n)
  local out = {}
  for i = 1, n or #values do out[i] = field(values[i]) end
  return table.concat(out, ",")
end

-- CSV text: a header of `columns`, then one line per row (a table keyed by
-- column name, or a list in column order).
function M.csv(rows, columns)
  if type(columns) ~= "table" or #columns == 0 then
    error("results.csv: columns must be a non-empty list", 2)
  end
  local lines = { M.csv_line(columns) }
  for i, r in ipairs(rows) do
    local vals = {}
    for j, c in ipairs(columns) do
      if r[c] ~= nil then vals[j] = r[c] else vals[j] = r[j] end
    end
    lines[i + 1] = M.csv_line(vals, #columns)
  end
  return table.concat(lines, "\n") .. "\n"
end

function M.write_csv(path, rows, columns)
  local text = M.csv(rows, columns)
  if path == "-" then io.write(text) return true end
  return write_file(path, text)
end

return M
