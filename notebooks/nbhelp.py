"""What the notebooks share: `where(f)` prints the live file, line and source of a project function."""
import inspect
from pathlib import Path


def where(obj, show=True):
    """Print where `obj` lives (file:line) and, if `show`, its source."""
    obj = inspect.unwrap(obj)  # through decorators such as @torch.no_grad()
    lines, start = inspect.getsourcelines(obj)
    print(f"{Path(inspect.getsourcefile(obj)).name}:{start}  {obj.__qualname__}")
    if show:
        print(''.join(lines))
