import { PortbindError } from '@portbind/core';

/**
 * A request that breaks the protocol. Redis answers `-ERR Protocol error: …` and closes the
 * connection once the reply is written (networking.c, setProtocolError); so does the adapter.
 */
export class ProtocolError extends PortbindError {
  constructor(detail: string) {
    super('PB_ERR_RESP_PROTOCOL', `Protocol error: ${detail}`);
  }

  /** The error as Redis puts it on the wire. */
  get reply(): string {
    return `-ERR ${this.message}\r\n`;
  }
}
