#!/usr/bin/env python3
"""CUDA emulator: rewrites a .cu file into C++ the emulator headers can compile.

  kernel<<<grid, block, smem, stream>>>(args)  ->  ::emu::Launch(grid, block, smem, stream)(kernel, args)
                                                   (also with <<< on the line after the kernel)
  extern __shared__ T name[];                  ->  T* name = ::emu::dynamic_smem<T>();
  __shared__ T a[N], b;                        ->  the same, then ::emu::poison_static(&a, sizeof(a))
                                                   for each name, on the same line (line numbers
                                                   stay those of the .cu file)

usage: preprocess.py IN.cu OUT.cpp
"""
import re
import sys

src = open(sys.argv[1]).read()
# clang-format may put a long launch's `<<<` on the line after the kernel's name; the newline
# is kept (after the kernel's name) so that line numbers stay those of the .cu file.
src = re.sub(r'^(\s*)([^\n]+?)\n(\s*)<<<(.+?)>>>\(',
             lambda m: f"{m.group(1)}::emu::Launch({m.group(4)})({m.group(2)},\n{m.group(3)}",
             src, flags=re.M)
src, launches = re.subn(r'^(\s*)(.+?)<<<(.+?)>>>\(',
                        lambda m: f"{m.group(1)}::emu::Launch({m.group(3)})({m.group(2)}, ",
                        src, flags=re.M)
src = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = ::emu::dynamic_smem<\1>();', src)


def poison(m):
    names = [part.strip().split('[')[0].strip() for part in m.group(3).split(',')]
    calls = ' '.join(f'::emu::poison_static(&{n}, sizeof({n}));' for n in names)
    return f"{m.group(1)}__shared__ {m.group(2)} {m.group(3)}; {calls}{m.group(4)}"


src = re.sub(r'^(\s*)__shared__ ([\w:<>]+) ([^;]+);(.*)$', poison, src, flags=re.M)
if '<<<' in src:
    sys.exit(f"{sys.argv[1]}: a kernel launch the emulator cannot rewrite (one launch per line)")
open(sys.argv[2], 'w').write(f'#line 1 "{sys.argv[1]}"\n' + src)
