# `condition N COND` on a watchpoint (issue 14, bug 6) is a condition on top
# of the watch expression, as in gdb: the watch stays, both must hold, and
# `condition N` alone removes the condition only.
load models/stories260K.bin --tokenizer models/tok512.bin
watch L*.resid_post norm > 14
condition 1 pos >= 12
info watchpoints
run "Once upon a time" -n 40
print L4.resid_post [0, 0:2]
condition 1
info breakpoints
continue
lua local _, s = djinn.current(); for _, b in ipairs(s:breakpoints()) do print(b.kind, b.cond, b.stop_if) end
condition 1 layer == 2
lua local _, s = djinn.current(); for _, b in ipairs(s:breakpoints()) do print(b.kind, b.cond, b.stop_if) end
continue
