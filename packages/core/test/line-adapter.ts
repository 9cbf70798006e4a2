import type { Socket } from 'node:net';
import type { Adapter, BindingContext, Connection } from '../src/index.js';

/**
 * A tiny line protocol for testing core with real sockets: each line is echoed back;
 * `WAIT ms` answers `DONE` after ms (in-flight work). Drain says `BYE shutdown` once in-flight
 * work is done; the idle timeout says `BYE idle`; refusal says `ERR max clients`.
 */
export class LineAdapter implements Adapter {
  readonly name: string = 'line';
  readonly scheme = 'line';
  readonly secureScheme = 'lines';
  readonly portEnv: string;
  readonly defaultPort = 7777;
  readonly conns = new Set<Connection>();
  readonly pending = new Map<Connection, number>();
  binding: BindingContext | undefined;
  draining = false;

  constructor(name = 'line', portEnv = 'LINE_PORT') {
    this.name = name;
    this.portEnv = portEnv;
  }

  open(binding: BindingContext): void {
    this.binding = binding;
  }

  connection(conn: Connection): void {
    this.conns.add(conn);
    conn.socket.once('close', () => this.conns.delete(conn));
    conn.socket.on('error', () => {});
    let buffer = '';
    conn.socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let newline = buffer.indexOf('\n');
      while (newline !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        this.#line(conn, line);
        newline = buffer.indexOf('\n');
      }
    });
  }

  refuse(socket: Socket): void {
    socket.write('ERR max clients\n');
  }

  idle(conn: Connection): void {
    conn.socket.end('BYE idle\n');
  }

  async drain(): Promise<void> {
    this.draining = true;
    for (const conn of this.conns) if (!this.pending.get(conn)) conn.socket.end('BYE shutdown\n');
  }

  #line(conn: Connection, line: string): void {
    const wait = /^WAIT (\d+)$/.exec(line);
    if (wait) {
      this.pending.set(conn, (this.pending.get(conn) ?? 0) + 1);
      setTimeout(() => {
        const left = (this.pending.get(conn) ?? 1) - 1;
        this.pending.set(conn, left);
        conn.socket.write('DONE\n');
        if (this.draining && left === 0) conn.socket.end('BYE shutdown\n');
      }, Number(wait[1]));
      return;
    }
    if (line === 'WHO') {
      conn.socket.write(`${conn.id} ${conn.secure ? 'tls' : 'plain'} ${conn.isLoopback ? 'loopback' : 'remote'}\n`);
      return;
    }
    conn.socket.write(`${line}\n`);
  }
}
