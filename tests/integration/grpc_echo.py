"""A gRPC server for the tests (python3-grpcio, no generated code: the
methods take and return raw bytes). Usage: grpc_echo.py PORT NAME
[CERT KEY] (with a certificate: TLS); prints "listening" once it serves. Methods of service test.Echo:
  Echo     unary: "NAME:" + the request; trailing metadata x-served-by: NAME
  Fail     unary: NOT_FOUND "no such thing"
  Stream   server streaming: the numbers 0..N-1 for a request "N"
  Collect  client streaming: the total length of the requests
  Chat     bidirectional: each request back, upper-cased, as it comes"""
import sys
from concurrent import futures

import grpc


def main():
    port, name = int(sys.argv[1]), sys.argv[2]

    def echo(req, ctx):
        print("echo %s" % req.decode(errors="replace"), flush=True)   # tests count these
        ctx.set_trailing_metadata((("x-served-by", name),))
        return name.encode() + b":" + req

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def stream(req, ctx):
        for i in range(int(req)):
            yield b"%d" % i

    def collect(it, ctx):
        return b"%d" % sum(len(x) for x in it)

    def chat(it, ctx):
        for x in it:
            yield x.upper()

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    })
    server = grpc.server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((handler,))
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port("127.0.0.1:%d" % port, creds)
    else:
        server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
