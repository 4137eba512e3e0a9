"""The inference thread of HandsNode (FrameWorker, a mixin of it): the one-slot mailbox the
image callbacks fill (with use_depth after the depth pairing), the thread that builds the
predictor and then processes the newest frame (HandsNode._process), ~/reset between frames,
and stopping the thread."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from dir_ros.ros.depth_input import stamp_seconds
from dir_ros.ros.parameters import make_smoother
from dir_ros.ros.stamp_pairing import Released

WORKER_JOIN_TIMEOUT_S = 5.0
# Slice of the constructor's wait for the predictor (built in the inference thread): Ctrl-C
# is handled between slices at the latest.
BUILD_WAIT_SLICE_S = 0.1
# ~/reset: longest wait of the service for the worker to finish a frame in progress and
# clear its state (a frame of the release network on 2 busy cores takes ~0.3 s).
RESET_WAIT_S = 10.0
# At start-up a frame waits at most this long for the camera's first CameraInfo, while a
# camera_info publisher is known: the camera_info reader can match the camera a frame or two
# after the image reader, and a frame answered before any CameraInfo is wrist-relative
# (metric false; seen once in test_launch_camera.py in fresh-clone CI). Several frame
# periods of any camera; only frames before the first CameraInfo wait, the newest of them
# (the mailbox) is answered, and a camera without a camera_info publisher never waits.
FIRST_CAMERA_INFO_WAIT_S = 1.0


class FrameWorker:
    """HandsNode's mailbox and inference thread (state set up in HandsNode._start)."""

    def _release_worker(self) -> None:
        """Tell the inference thread to end without waiting for it (a failed or interrupted
        startup: it may still be building the predictor; it is a daemon)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            self._stop.set()
            with lock:
                lock.notify_all()

    def _on_image(self, msg: Any) -> None:
        """Newest frame wins: replace the mailbox content, count what gets dropped. With
        use_depth the frame first waits in the pairer for its depth frame."""
        t_recv, wall_recv = time.monotonic(), time.time()
        stamp_s = stamp_seconds(msg.header.stamp)
        with self._lock:
            self.stats.received += 1
            self._loss.add(stamp_s)
            if self._pairer is None:
                if self._mailbox is not None:
                    self.stats.dropped += 1
                self._mailbox = (msg, t_recv, wall_recv, stamp_s, None)
            else:
                released = self._pairer.add_colour(stamp_s, (msg, t_recv, wall_recv),
                                                   t_recv)
                if released is not None:
                    self._deliver(released)
            self._lock.notify()  # a waiting frame changes the worker's next deadline too

    def _on_depth(self, msg: Image) -> None:
        """use_depth: a depth frame for the pairer; it may release a waiting colour frame."""
        stamp_s = stamp_seconds(msg.header.stamp)
        with self._lock:
            released = self._pairer.add_depth(stamp_s, msg, time.monotonic())
            if released is not None:
                self._deliver(released)
                self._lock.notify()

    def _deliver(self, released: Released) -> None:
        """(Under the lock.) A colour frame the pairer let go into the mailbox."""
        msg, t_recv, wall_recv = released.colour
        if self._mailbox is not None:
            self.stats.dropped += 1
        self._mailbox = (msg, t_recv, wall_recv, released.stamp, released)

    def _work(self, predictor_factory: Callable[[dict], Any], config: dict[str, Any]) -> None:
        """The inference thread: build the predictor, then serve the mailbox. Torch runs in
        this one thread only: a second thread running torch (the model built in the main
        thread) gives OpenMP two thread teams on the cores, whose workers then sleep between
        parallel regions instead of spinning (the light network: 43 instead of 27 ms)."""
        try:
            self.predictor = predictor_factory(config)
        except BaseException as e:  # handed to the constructor, which raises it
            self._build_error = e
            return
        finally:
            self._built.set()
        self._serve()

    def _wait_for_predictor(self) -> None:
        """Wait until the inference thread has built the predictor; raise its error. Waits in
        short slices so that Ctrl-C reaches the main thread at once."""
        while not self._built.wait(BUILD_WAIT_SLICE_S):
            # Ctrl-C does not always reach this thread as KeyboardInterrupt (twice in
            # fresh-clone CI it kept waiting), but rclpy's own SIGINT/SIGTERM handler always
            # shuts the context down: treat that as the interrupt.
            if not self.context.ok():
                raise KeyboardInterrupt
        if self._build_error is not None:
            error, self._build_error = self._build_error, None
            raise error

    def _serve(self) -> None:
        """Process the newest frame of the mailbox until stopped."""
        while True:
            with self._lock:
                frame = self._next_frame()
            if frame is None:
                return
            try:
                self._process(*frame)
            except Exception as e:  # keep serving: one bad frame must not kill the node
                if self._stop.is_set():  # shutting down: publishers may already be gone
                    return
                with self._lock:
                    self.stats.inference_errors += 1
                self._log_throttled(f"inference:{type(e).__name__}",
                                    f"processing failed: {type(e).__name__}: {e}")

    def _next_frame(self) -> Optional[tuple[Any, float, float, float, Optional[Released]]]:
        """(Worker, under the lock.) Wait for the next frame and take it out of the mailbox;
        run a ~/reset request first; release colour frames whose depth wait ended. None
        once stopped."""
        while not self._stop.is_set():
            if self._reset_request is not None:
                self._reset_state()
                continue
            timeout = 0.5
            if self._pairer is not None:
                now = time.monotonic()
                released = self._pairer.poll(now)
                if released is not None:
                    self._deliver(released)
                deadline = self._pairer.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(deadline - now, 0.0))
            if self._mailbox is not None:
                hold = self._camera_info_hold(self._mailbox[1], time.monotonic())
                if hold <= 0.0:
                    frame, self._mailbox = self._mailbox, None
                    return frame
                timeout = min(timeout, hold)
            self._lock.wait(timeout=timeout)
        return None

    def _camera_info_hold(self, t_recv: float, now: float) -> float:
        """(Worker, under the lock.) Seconds the mailbox frame (received at t_recv) still
        waits for the camera's first CameraInfo; 0: answer it now. Waits only before the
        first CameraInfo, at most FIRST_CAMERA_INFO_WAIT_S from the first frame, and only
        while the camera_info topic has a publisher."""
        if self._info_wait_done:
            return 0.0
        if self._info_wait_end is None:
            self._info_wait_end = t_recv + FIRST_CAMERA_INFO_WAIT_S
        left = self._info_wait_end - now
        if left <= 0.0:  # none came: wrist-relative hands from now on ("no camera_info yet")
            self._info_wait_done = True
            return 0.0
        return left if self.count_publishers(self._info_topic) > 0 else 0.0

    def _first_camera_info(self) -> None:
        """(Executor thread.) A CameraInfo arrived: frames no longer wait for one; wake the
        worker if it holds a frame for it."""
        if not self._info_wait_done:
            with self._lock:
                self._info_wait_done = True
                self._lock.notify()

    def _reset_state(self) -> None:
        """(Worker, under the lock, between frames.) ~/reset: forget every per-stream state
        (the predictor's tracking / warm start, the smoother, the depth pairing, the pinch
        flags and the retargeting optimisers, the
        transport loss window, a frame not yet processed), then tell the service."""
        request, self._reset_request = self._reset_request, None
        try:
            reset = getattr(self.predictor, "reset", None)
            if reset is not None:
                reset()
            smoother = self.smoother
            if smoother is not None:
                if hasattr(smoother, "reset"):
                    smoother.reset()
                else:  # a filter without reset: a fresh one
                    self.smoother = make_smoother(self.cfg)
            if self._pairer is not None:
                self._pairer.reset()
            self._robot.reset()
            self._loss.reset()
            if self._mailbox is not None:
                self._mailbox = None
                self.stats.dropped += 1
        finally:
            request.set()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        """~/reset (std_srvs/Trigger): clear all per-stream state (see _reset_state) on the
        worker, between frames, so it never races a frame in progress; answers when done.
        Call it before an independent image (a photo after another) so that its hands do
        not depend on the frames before it."""
        done = threading.Event()
        with self._lock:
            if self._stop.is_set():
                response.success, response.message = False, "the node is shutting down"
                return response
            self._reset_request = done
            self._lock.notify_all()
        if done.wait(RESET_WAIT_S):
            response.success = True
            response.message = ("per-stream state cleared: tracking and warm start, "
                                "smoothing, depth pairing, grasp and retargeting state, "
                                "transport loss window")
        else:
            response.success = False
            response.message = (f"the frame in progress did not end within {RESET_WAIT_S:g} s: "
                                f"the reset runs after it")
        return response

    def stop(self) -> None:
        """Stop the worker thread (idempotent): it finishes the frame in progress."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)

    def worker_alive(self) -> bool:
        """True while the inference thread runs (after stop(): stuck in native code)."""
        return self._worker.is_alive()
