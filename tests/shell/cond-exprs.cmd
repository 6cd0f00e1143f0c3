# Conditions as a gdb user writes them (issue 14, bug 5): a lone `=` is an
# error, not equality; a number may come first; a token is named by its text
# as stops print it, resolved through the tokenizer when the breakpoint is set.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
break L0.q if norm = 3
break L0.q if pos=3
break L4.resid_post if 10 < pos and 4 <= layer
break L1.resid_post if token == "the"
break L1.resid_post if token == "xyz"
break L1.resid_post if norm == " the"
break L1.resid_post if token > " the"
break L1.resid_post if token == " little"
info breakpoints
run "Once upon a time" -n 40
bt
delete 2
continue
info breakpoints
