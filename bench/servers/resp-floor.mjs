// The floor under any Node RESP server, for bench/resp.mjs's throughput tests: a bare `node:net`
// server that does the least a server can do per request and still answer every one. It counts the
// commands in each chunk it reads by their leading `*` (redis-benchmark's SET and GET keys and values
// hold none) and writes one `+OK\r\n` per command, in one write per read, as a real server batches
// its replies. No parsing, no dispatch, no store: what is left is Node's own read and write path
// (libuv, the stream machinery, the syscalls), which no Node server can avoid.
//
// Environment: PORT.
import { createServer } from 'node:net';

const OK = '+OK\r\n';
const replies = [OK];
const reply = (count) => {
  while (replies.length < count) replies.push(replies[replies.length - 1] + OK);
  return replies[count - 1];
};
createServer((socket) => {
  socket.on('error', () => {});
  socket.on('data', (chunk) => {
    let count = 0;
    for (let i = chunk.indexOf(42); i !== -1; i = chunk.indexOf(42, i + 1)) count++;
    if (count > 0) socket.write(reply(count));
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
