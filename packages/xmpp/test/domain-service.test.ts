import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import {
  type DomainServiceHandle,
  defaultModules,
  memoryStorage,
  StanzaErrorException,
  XmppConfigError,
  type XmppModule,
  xml,
  xmppServer,
} from '../src/index.js';
import { rawLogin, start } from './support.js';

// Domain services: a module serving a domain of its own (MUC, upload, components) gets every
// stanza to that domain, is listed in the server's disco#items, and answers with `api.route`.

/** A service on echo.localhost: echoes messages from the JID they were sent to; refuses IQs. */
function echo(): XmppModule & { handle?: DomainServiceHandle } {
  const module: XmppModule & { handle?: DomainServiceHandle } = {
    name: 'echo',
    setup(api) {
      module.handle = api.domainService('echo.localhost', {
        name: 'Echo',
        async stanza(event, kind) {
          if (kind === 'iq') throw new StanzaErrorException('feature-not-implemented', 'echo only echoes');
          if (kind !== 'message') return;
          const body = event.stanza.getChildText('body') ?? '';
          await api.route(
            xml('message', { from: event.to.toString(), to: event.from.toString(), type: 'chat' }, xml('body', {}, `echo: ${body}`)),
          );
        },
      });
    },
  };
  return module;
}

async function ask(socket: Socket, id: string, stanza: string): Promise<string> {
  socket.write(stanza);
  const text = await readUntil(socket, new RegExp(`<iq[^>]* id='${id}'[^>]*(/>|>[\\s\\S]*?</iq>)`));
  return text.slice(text.lastIndexOf('<iq'));
}

describe('domain services', () => {
  it('route stanzas to the domain to the service, list it in disco#items, and bounce what it refuses', async () => {
    const service = echo();
    const { port } = await start({ server: { storage: memoryStorage(), modules: [...defaultModules(), service] } });
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    juliet.write("<message to='bot@echo.localhost/x' type='chat' id='m1'><body>hi &amp; bye</body></message>");
    const echoed = await readUntil(juliet, /echo: hi &amp; bye<\/body>[\s\S]*?<\/message>/);
    expect(echoed).toContain("from='bot@echo.localhost/x'");

    const items = await ask(
      juliet,
      'i',
      "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    );
    expect(items).toContain("<item jid='echo.localhost' name='Echo'/>");

    const refused = await ask(juliet, 'q', "<iq type='get' id='q' to='echo.localhost'><query xmlns='urn:example'/></iq>");
    expect(refused).toContain("type='error'");
    expect(refused).toContain('<feature-not-implemented');
    expect(refused).toContain('echo only echoes');

    // Closed: the domain is unknown again.
    service.handle?.close();
    const gone = await ask(juliet, 'g', "<iq type='get' id='g' to='echo.localhost'><query xmlns='urn:example'/></iq>");
    expect(gone).toContain('<service-unavailable');
    const none = await ask(
      juliet,
      'n',
      "<iq type='get' id='n' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    );
    expect(none).not.toContain('echo.localhost');
    juliet.destroy();
  });

  it("refuse the server's own domain, a domain served twice, and a JID that is not a domain", () => {
    const serve = (domain: string): XmppModule => ({
      name: `serve-${domain}`,
      setup(api) {
        api.domainService(domain, { stanza: () => {} });
      },
    });
    const make = (modules: XmppModule[]) => xmppServer({ domain: 'localhost', storage: memoryStorage(), modules });
    expect(() => make([serve('localhost')])).toThrow(XmppConfigError);
    expect(() => make([serve('a.localhost'), { ...serve('a.localhost'), name: 'other' }])).toThrow(/both serve a.localhost/);
    expect(() => make([serve('room@a.localhost')])).toThrow(/not a domain/);
  });
});
