"""Print how many processes in this PID namespace are zombies."""

import os

count = 0
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except FileNotFoundError:
            continue
        count += data[data.rfind(b")") + 2 :][:1] == b"Z"
print(count)
