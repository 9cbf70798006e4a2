/** The chat page: logs in over XMPP-over-WebSocket with @xmpp/client's browser build and chats. */
export function page(domain: string): string {
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>portbind chat</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; min-height: 10rem; padding: .5rem; white-space: pre-wrap; }
  form { margin: .5rem 0; } input { margin-right: .3rem; }
</style>
<h1>portbind chat</h1>
<form id="login">
  <input id="user" placeholder="user" autocomplete="username"> @${domain}
  <input id="password" type="password" placeholder="password" autocomplete="current-password">
  <button>Log in</button> <span id="status">offline</span>
</form>
<form id="send">
  <input id="to" placeholder="to (user@${domain})"> <input id="body" placeholder="message" autocomplete="off"> <button>Send</button>
</form>
<div id="log"></div>
<script src="/xmpp.min.js"></script>
<script>
  const { client, xml } = window.XMPP;
  const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };
  let xmpp;
  document.getElementById('login').onsubmit = async (event) => {
    event.preventDefault();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    xmpp = client({
      service: scheme + '//' + location.host + '/xmpp-websocket',
      domain: ${JSON.stringify(domain)},
      username: document.getElementById('user').value,
      password: document.getElementById('password').value,
    });
    xmpp.on('error', (error) => { document.getElementById('status').textContent = 'error: ' + (error.condition || error.message); });
    xmpp.on('stanza', (stanza) => {
      if (stanza.is('message') && stanza.getChildText('body')) log(stanza.attrs.from + ': ' + stanza.getChildText('body'));
    });
    const jid = await xmpp.start();
    await xmpp.send(xml('presence'));
    document.getElementById('status').textContent = 'online as ' + jid;
  };
  document.getElementById('send').onsubmit = async (event) => {
    event.preventDefault();
    const to = document.getElementById('to').value;
    const body = document.getElementById('body').value;
    await xmpp.send(xml('message', { to, type: 'chat' }, xml('body', {}, body)));
    log('me → ' + to + ': ' + body);
    document.getElementById('body').value = '';
  };
</script>
</html>
`;
}
