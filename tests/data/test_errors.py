import pickle
from pathlib import Path

from fcos.data.errors import DatasetError


def test_message_names_file_line_and_annotation():
    e = DatasetError(
        Path("/p/annotations/train.json"), "category_id 99 is not in categories", annotation_id=17
    )
    assert str(e) == "/p/annotations/train.json: annotation id 17: category_id 99 is not in categories"
    assert str(DatasetError("labels/x.txt", "bad", line=3)) == "labels/x.txt line 3: bad"
    assert isinstance(e, ValueError)
    assert (e.path, e.annotation_id, e.line) == (Path("/p/annotations/train.json"), 17, None)


def test_survives_pickling_and_dataloader_style_rebuild():
    e = DatasetError("a.txt", "broken", line=2)
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, DatasetError) and str(back) == str(e) and back.line == 2
    # torch re-raises worker exceptions as type(e)(text): still a DatasetError, whose message is the
    # original one line; the worker's traceback is kept beside it.
    text = (f"Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
            f'  File "x.py", line 1, in f\n    raise e\nfcos.data.errors.DatasetError: {e}\n')
    rebuilt = DatasetError(text)
    assert str(rebuilt) == "a.txt line 2: broken" and rebuilt.worker_traceback == text
