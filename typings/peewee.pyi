# peewee 4 ships stubs that type every query's rows as model instances, whatever .tuples(), .dicts()
# or a join make of them; corral's type check takes peewee's names as Any instead (pyproject mypy_path).
from typing import Any

def __getattr__(name: str) -> Any: ...
