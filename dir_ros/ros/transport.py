"""The node's transport: its sensor subscriptions (image, camera_info, depth,
depth_camera_info) with the QoS chosen by image_reliability, best_available's matching of
the publishers it sees (re-subscribing when they change) and the executor of main()."""
from __future__ import annotations

import collections
from typing import Any, Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Image / camera_info subscription queue (frames DDS holds until the executor takes them).
# The mailbox keeps only the newest frame anyway, so a deeper queue adds no latency; it
# holds the frames that arrive while the executor thread does not run, which on 2 busy
# cores (the worker's inference threads, other processes) happens for several frame
# periods: a reliable 640x480 camera at 30 Hz started after the node, two busy-loop
# processes beside it, lost 10 of 60 frames once in 3 runs with a queue of 1 and 4-6 now and
# then with 5 (fresh-clone CI; test_node_reliability.py). 10: a third of a second at 30 Hz
# (9 MB of 640x480 rgb8 at most); plain rclpy at 1280x720, 30 Hz: depth 1 received 290 of
# 300, depth 5 all 300.
IMAGE_QUEUE_DEPTH = 10
# image_reliability -> subscription reliability. best_available is resolved by the node from
# the publishers it sees (SensorSubscriptions.match_publishers): rmw resolves it only once.
RELIABILITY = {"best_available": ReliabilityPolicy.BEST_AVAILABLE,
               "best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}
# best_available: how often the publishers of image and camera_info are looked up to keep the
# subscription's reliability matched to them (see SensorSubscriptions.match_publishers).
QOS_RECHECK_PERIOD_S = 1.0
# ... and how often while a sensor topic has no known publisher: the node listens with a
# reliable and a best-effort subscription then (nothing of a starting camera is lost), and
# a camera that appears should not be sent every frame twice for long.
QOS_PROBE_RECHECK_PERIOD_S = 0.1
# Recent image keys (stamp, frame_id) remembered while two image subscriptions overlap, to
# drop the copy of a frame delivered by both: more than both queues hold.
DEDUPE_MEMORY = 4 * IMAGE_QUEUE_DEPTH


class SensorSubscriptions:
    """A node's sensor subscriptions, by topic: each held with the reliability that
    image_reliability asks for (best_available: matched to the topic's publishers, see
    match_publishers); while two image subscriptions overlap, a frame's copy is dropped."""

    def __init__(self, node: Node, image_topic: str, choice: str) -> None:
        self.node = node
        self.image_topic = image_topic
        self.choice = choice  # image_reliability: a key of RELIABILITY
        # topic -> [message type, callback, {reliability: subscription}]
        self.topics: dict[str, list[Any]] = {}
        # replaced subscriptions kept until the next re-check (subscribe)
        self._retired_subs: list[Any] = []
        self._image_subs_alive = 0  # image subscriptions, replaced ones included
        self._sub_ids = iter(range(1 << 62))  # tells the image subscriptions apart (dedupe)
        self._image_keys: collections.deque = collections.deque(maxlen=DEDUPE_MEMORY)
        self._probe_timer: Any = None

    def add(self, topic: str, msg_type: type, callback: Callable[[Any], None]) -> None:
        """A sensor topic to subscribe to (by start())."""
        self.topics[topic] = [msg_type, callback, {}]

    def start(self) -> None:
        """Subscribe to every added topic: best_available matches the publishers now (none
        known yet: listens both ways) and every QOS_RECHECK_PERIOD_S."""
        if self.choice == "best_available":
            self.match_publishers()  # no publisher known yet: listens both ways
            self.node.create_timer(QOS_RECHECK_PERIOD_S, self.match_publishers)
        else:
            for topic in self.topics:
                self.subscribe(topic, (RELIABILITY[self.choice],))

    def subscribe(self, topic: str, policies: tuple[ReliabilityPolicy, ...]) -> None:
        """Hold subscriptions of exactly these reliabilities on a sensor topic (queue
        IMAGE_QUEUE_DEPTH; the mailbox keeps the newest): create the missing ones; a
        replaced one stays until the next QoS re-check (match_publishers), so a message
        already in its queue, or sent before the new one has matched, is still delivered (a
        camera that sends its intrinsics once would otherwise leave the node without them
        for good; a starting camera's frames are not lost in the switch). While two image
        subscriptions exist, the copy of a frame delivered by both is dropped (_on_image_from)."""
        entry = self.topics[topic]
        live: dict[ReliabilityPolicy, Any] = entry[2]
        is_image = topic == self.image_topic
        for policy in policies:
            if policy in live:
                continue
            qos = QoSProfile(depth=IMAGE_QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST,
                             reliability=policy, durability=DurabilityPolicy.VOLATILE)
            callback = entry[1]
            if is_image:
                source = next(self._sub_ids)
                callback = lambda msg, source=source: self._on_image_from(msg, source)  # noqa: E731
                self._image_subs_alive += 1
            # best_available matches the publishers itself: no incompatible-QoS warning from
            # the subscription that does not fit (and no event handlers for the executor)
            events = (SubscriptionEventCallbacks(use_default_callbacks=False)
                      if self.choice == "best_available" else None)
            live[policy] = self.node.create_subscription(entry[0], topic, callback, qos,
                                                         event_callbacks=events)
        for policy in [p for p in live if p not in policies]:
            self._retired_subs.append(live.pop(policy))

    def reliability(self, topic: str) -> str:
        """The reliabilities of a sensor topic's live subscriptions ('reliable',
        'best_effort', or 'reliable+best_effort' while best_available listens both ways)."""
        names = {p.name.lower() for p in self.topics[topic][2]}
        return "+".join(n for n in ("reliable", "best_effort") if n in names)

    def match_publishers(self) -> None:
        """image_reliability best_available: reliable while every publisher of the topic is
        reliable, best effort when one is not; both (a reliable and a best-effort
        subscription, the copies dropped) while no publisher is known, so the first frames
        of a camera of either kind that starts later are not lost. rmw resolves
        BEST_AVAILABLE only once, when the subscription is created: a node started before
        its camera stayed reliable and never heard a best-effort camera. Re-checked every
        QOS_RECHECK_PERIOD_S, every QOS_PROBE_RECHECK_PERIOD_S while the image topic has no
        publisher; a change re-creates the subscription (logged). Subscriptions replaced at
        the previous check are destroyed here."""
        for sub in self._retired_subs:
            if sub.topic_name == self.image_topic:
                self._image_subs_alive -= 1
            self.node.destroy_subscription(sub)
        self._retired_subs.clear()
        image_probing = False
        for topic, entry in self.topics.items():
            pubs = self.node.get_publishers_info_by_topic(topic)
            if not pubs:  # listen both ways for the next camera of either kind
                want: tuple[ReliabilityPolicy, ...] = (ReliabilityPolicy.RELIABLE,
                                                       ReliabilityPolicy.BEST_EFFORT)
                image_probing |= topic == self.image_topic
            elif all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs):
                want = (ReliabilityPolicy.RELIABLE,)
            else:
                want = (ReliabilityPolicy.BEST_EFFORT,)
            if set(want) != set(entry[2]):
                self.subscribe(topic, want)
                if pubs:
                    kind = ("all reliable" if want[0] == ReliabilityPolicy.RELIABLE
                            else "not all reliable")
                    self.node.get_logger().info(f"{topic}: {len(pubs)} publisher(s), {kind}: "
                                                f"subscribing {want[0].name.lower()}")
        if image_probing:  # look again soon: the camera's frames travel twice meanwhile
            if self._probe_timer is None:
                self._probe_timer = self.node.create_timer(QOS_PROBE_RECHECK_PERIOD_S,
                                                           self.match_publishers)
            elif self._probe_timer.is_canceled():
                self._probe_timer.reset()
        elif self._probe_timer is not None and not self._probe_timer.is_canceled():
            self._probe_timer.cancel()

    def _on_image_from(self, msg: Any, source: int) -> None:
        """An image from subscription `source`: while two image subscriptions exist (a QoS
        switch, or listening both ways), a frame whose stamp and frame_id another one just
        delivered is that frame's copy and is dropped."""
        if self._image_subs_alive > 1:
            header = msg.header
            key = (header.stamp.sec, header.stamp.nanosec, header.frame_id)
            if any(k == key and s != source for s, k in self._image_keys):
                return
            self._image_keys.append((source, key))
        self.topics[self.image_topic][1](msg)  # the node's image callback


def make_executor(context: Any) -> Any:
    """The executor of main(): rclpy's EventsExecutor (callback-based, in C++: an image
    reaches its callback ~0.5 ms sooner and the worker ~0.4 ms sooner than with the
    wait-set SingleThreadedExecutor, issue 20), or SingleThreadedExecutor where this rclpy
    has none."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)
