"""The one door for files: every read and write of ticketlab goes through these modules.

- `inputs`: what a user gives, read carefully: a regular file (never a FIFO, a device, a
  directory), opened without waiting, of a bounded size; JSON with no key given twice; safetensors.
- `atomic`: results never half-written: temporary siblings renamed into place, temporary
  directories renamed as a whole, a killed writer's temporaries removed, valid JSON always.
- `tensors`: tensors as safetensors bytes, one file for one content.
- `owned`: files ticketlab made and opens again (never a link to a user's file), and the lock that
  keeps a second process out of a run's directory.
- `keys`: content keys, what a run read (`model_key`: what loading a model reads of its folder).
- `caches`: where computed caches go.

Output directories that never destroy what is not theirs are `core/outputs.py`, built on these.
"""

from ..lazy import lazy_exports

# Each public name's module, imported on first use (`ticketlab.core.lazy`): `from ticketlab.core.files
# import read_json` is the same object as `from ticketlab.core.files.inputs import read_json`.
_WHERE = {
    "as_written": "atomic",
    "atomic_write_bytes": "atomic",
    "atomic_write_csv": "atomic",
    "atomic_write_json": "atomic",
    "atomic_write_text": "atomic",
    "busy": "owned",
    "check_folder": "inputs",
    "check_regular": "inputs",
    "check_regular_unopened": "inputs",
    "content_key": "keys",
    "corpus_cache_dir": "caches",
    "CORPUS_CACHE_HELP": "caches",
    "CORPUS_PATHS": "keys",
    "default_cache_dir": "caches",
    "DuplicateKey": "inputs",
    "entry_keys": "keys",
    "exclusive": "owned",
    "finite_json": "atomic",
    "first_link": "inputs",
    "follow_umask": "atomic",
    "HOST": "atomic",
    "HUB_DATASET": "keys",
    "load_safetensors": "inputs",
    "lock_holder": "owned",
    "make_dir": "atomic",
    "model_key": "keys",
    "open_append": "owned",
    "open_own": "owned",
    "open_read": "inputs",
    "open_safetensors": "inputs",
    "output_name": "atomic",
    "parse_json": "inputs",
    "pid_alive": "atomic",
    "read_bytes": "inputs",
    "read_json": "inputs",
    "READ_LIMIT": "inputs",
    "read_own": "owned",
    "read_tail": "inputs",
    "read_text": "inputs",
    "read_upto": "inputs",
    "remove_stale": "atomic",
    "replace_with": "atomic",
    "safetensors_bytes": "tensors",
    "STALE_AFTER_S": "atomic",
    "TEMP": "atomic",
    "temp_dir": "atomic",
    "temp_file": "atomic",
    "to_json": "atomic",
    "umask": "atomic",
    "writing": "atomic",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
