# save breakpoints FILE (gdb's): break, tbreak, watch, condition, ignore,
# disable and commands lines that `source FILE` makes again, numbered $bpnum.
# The listing after delete + source is the one before (numbers go on, as in
# gdb); in a new session, where numbers start at 1, it is the same exactly.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
break L3.resid_post if norm > 3
tbreak L1.attn_out
break token 7
break L*.mlp_out if max > 2.5
ignore 4 3
disable 4
watch L2.resid_post norm > 1000
condition 5 max > 3
break logits if token == " the"
commands 6
silent
print logits --top 2
continue
end
info breakpoints
save breakpoints bps.txt
echo \n-- the file:\n
source tests/shell/cat-bps.lua
echo \n-- delete all, source it\n
delete
info breakpoints
source bps.txt
info breakpoints
echo \n-- a new session: the same numbers too\n
session new other
source bps.txt
info breakpoints
echo \n-- it works: the run stops where the first breakpoint says\n
run "Once upon a time" -n 2
echo \n-- refused\n
save breakpoints /nonexistent/dir/b.txt
delete
save breakpoints none.txt
condition $bpnum norm > 1
save
save watchpoints w.txt
