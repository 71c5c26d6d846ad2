"""The weights lock: replies read for their whole generation, a weight change waits for them
and, once waiting, goes before new replies."""
import threading
import time

from assistant.locks import ReadWriteLock


def test_writer_waits_for_readers_and_goes_first():
    lock = ReadWriteLock()
    events: list[str] = []
    with lock.read():
        writer = threading.Thread(target=lambda: _write(lock, events))
        writer.start()
        time.sleep(0.05)
        assert events == []  # blocked by the open reader
        reader = threading.Thread(target=lambda: _read(lock, events))
        reader.start()
        time.sleep(0.05)
        assert events == []  # a new reader queues behind the waiting writer
    writer.join(2)
    reader.join(2)
    assert events == ["write", "read"]


def _write(lock, events):
    with lock.write():
        events.append("write")


def _read(lock, events):
    with lock.read():
        events.append("read")


def test_reply_holds_the_read_lock_while_streaming(tiny_llm):
    stream = tiny_llm.stream_chat([{"role": "user", "content": "Where is the Louvre?"}],
                                  max_new_tokens=5)
    next(stream)
    assert tiny_llm.weights_lock.readers == 1
    list(stream)
    assert tiny_llm.weights_lock.readers == 0
    abandoned = tiny_llm.stream_chat([{"role": "user", "content": "Hi"}], max_new_tokens=5)
    next(abandoned)
    abandoned.close()  # a client that goes away mid-reply releases it too
    assert tiny_llm.weights_lock.readers == 0
