// The slice of @xmpp/client (which ships no types) that the tests use.
declare module '@xmpp/client' {
  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildText(name: string, xmlns?: string): string | null;
  }
  export interface Client {
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(element: Element): Promise<void>;
    on(event: 'stanza', listener: (stanza: Element) => void): void;
    on(event: 'error', listener: (error: Error & { condition?: string }) => void): void;
    on(event: string, listener: (...args: never[]) => void): void;
    iqCaller: {
      request(element: Element): Promise<Element>;
      get(element: Element, to?: string): Promise<Element>;
      set(element: Element, to?: string): Promise<Element>;
    };
  }
  export function client(options: {
    service: string;
    domain: string;
    username?: string;
    password?: string;
    resource?: string;
    /** Connection timeouts (open, close, send-receive), ms; 2000 by default. */
    timeout?: number;
  }): Client;
  export function xml(name: string, attrs?: Record<string, string | undefined>, ...children: Array<Element | string>): Element;
}
