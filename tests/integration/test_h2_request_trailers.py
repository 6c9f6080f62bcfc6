"""Request trailers towards `http2: true` pools (proxy/h2_upstream.c): an
HTTP/2 client's trailing HEADERS, and an HTTP/1.1 client's chunked trailer
section, reach an HTTP/2 backend as a trailing HEADERS frame with
END_STREAM, lower-cased, without the fields a trailer section must not
carry. The backend is written here frame by frame (python3-h2) and records
what it receives."""
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events

from harness import free_port
from test_upstream_h2_edges import H2Backend, h2_pool_config, http1_exchange, send


class RecordingBackend:
    """An HTTP/2 backend that records each request's headers, body and
    trailers, and answers 200 "ok" once the request stream ended."""

    def __init__(self):
        self.requests = []
        self.done = threading.Event()
        self.be = H2Backend(self._serve)
        self.address = self.be.address

    def _serve(self, conn, sock, events):
        got = {}
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                got[ev.stream_id] = {"headers": dict(ev.headers), "body": b"", "trailers": None}
            elif isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id]["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                got[ev.stream_id]["trailers"] = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                self.requests.append(got.pop(ev.stream_id))
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", "2")])
                conn.send_data(ev.stream_id, b"ok", end_stream=True)
                self.done.set()
            send(conn, sock)

    def stop(self):
        self.be.stop()


def h2_client_request(port, headers, chunks, trailers, timeout=10):
    """One request from a python3-h2 client (prior knowledge): the head, the
    body in DATA frames, then the trailers. Returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        conn.initiate_connection()
        conn.send_headers(1, headers)
        for c in chunks:
            conn.send_data(1, c)
        conn.send_headers(1, trailers, end_stream=True)
        s.sendall(conn.data_to_send())
        status, body, ended = None, b"", False
        deadline = time.monotonic() + timeout
        while not ended and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    ended = True
            s.sendall(conn.data_to_send())
        return status, body


def test_h2_client_request_trailers_reach_an_http2_backend(procs):
    """An HTTP/2 client sends a body without content-length in DATA frames,
    then trailers (a checksum, as storage and RPC clients do): the backend
    gets the same body and the trailers as a trailing HEADERS frame. Fields
    no trailer section may carry (content-length, host, trailer, te) are
    dropped on the way; the others arrive as sent."""
    be = RecordingBackend()
    port = free_port()
    try:
        procs.sluice(h2_pool_config(port, be.address).replace(
            "    mode: http\n", "    mode: http\n    http2: true\n"), wait_ports=[port])
        status, body = h2_client_request(
            port,
            [(":method", "POST"), (":scheme", "http"), (":path", "/upload"), (":authority", "t")],
            [b"hello ", b"", b"world"],
            [("x-checksum", "sha256=abc"), ("content-length", "11"), ("host", "evil"),
             ("trailer", "x-checksum"), ("te", "trailers"), ("x-count", "2")])
        assert status == "200" and body == b"ok", (status, body)
        assert be.done.wait(5)
        req = be.requests[0]
        assert req["body"] == b"hello world", req
        assert req["trailers"] == [("x-checksum", "sha256=abc"), ("x-count", "2")], req
    finally:
        be.stop()


def test_http11_chunked_trailer_section_reaches_an_http2_backend(procs):
    """An HTTP/1.1 client's chunked body and its trailer section: the
    backend gets the data as DATA and the section as trailers, names
    lower-cased, without what would make an HTTP/2 peer reset the stream
    (Connection, Keep-Alive, a TE other than trailers) and without Trailer.
    Before, the section was dropped towards http2 pools."""
    be = RecordingBackend()
    port = free_port()
    try:
        procs.sluice(h2_pool_config(port, be.address), wait_ports=[port])
        got = http1_exchange(
            port,
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
            b"Connection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n"
            b"X-Sum: 42\r\nConnection: x-drop\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\n"
            b"Trailer: X-Sum\r\nX-Meta: A b\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200"), got[:300]
        assert be.done.wait(5)
        req = be.requests[0]
        assert req["body"] == b"hello world", req
        assert req["trailers"] == [("x-sum", "42"), ("x-meta", "A b")], req
        assert not be.be.errors, be.be.errors
    finally:
        be.stop()


def test_request_without_trailers_still_ends_with_its_data(procs):
    """No trailers: END_STREAM stays on the last DATA frame (the backend
    sees no trailing HEADERS), for an HTTP/1.1 chunked body too."""
    be = RecordingBackend()
    port = free_port()
    try:
        procs.sluice(h2_pool_config(port, be.address), wait_ports=[port])
        got = http1_exchange(port, b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                   b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200"), got[:300]
        assert be.done.wait(5)
        assert be.requests[0]["body"] == b"abc" and be.requests[0]["trailers"] is None, be.requests
    finally:
        be.stop()
