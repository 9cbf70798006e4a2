import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TLSSocket } from 'node:tls';

/** A fetch-style handler: the standard `Request` in, a `Response` out. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

// Converting between node:http and the fetch API is a few lines over what Node ships
// (Readable.toWeb/fromWeb, Headers); no dependency is needed for it.

/** Build a `Request` from a node:http request. The body streams; `signal` aborts if the client goes away. */
export function toRequest(req: IncomingMessage, res: ServerResponse): Request {
  const secure = (req.socket as TLSSocket).encrypted === true;
  const host = req.headers.host ?? 'localhost';
  const url = new URL(req.url ?? '/', `${secure ? 'https' : 'http'}://${host}`);
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string);
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: controller.signal };
  if (hasBody) {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  return new Request(url, init);
}

/** Write a `Response` to a node:http response, streaming its body with backpressure. */
export async function sendResponse(response: Response, res: ServerResponse): Promise<void> {
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') continue;
    res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (response.body === null || res.req.method === 'HEAD') {
    res.end();
    return;
  }
  await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>), res);
}
