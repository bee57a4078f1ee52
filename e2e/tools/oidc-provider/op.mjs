// A real OpenID provider for the single sign-on tests: panva's
// oidc-provider (OpenID Certified), started by tests/support/upstream_op.rs.
// Its configuration comes as JSON in OP_CONFIG:
//   { "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }],
//     "accounts": { "<login>": { "email": ..., "name": ..., "groups": [...] } } }
// It listens on 127.0.0.1 on a free port and prints `listening <issuer>`;
// with "tls": { "cert": PEM, "key": PEM } over HTTPS (a private CA's
// certificate, as enterprise IdPs behind an internal CA have), and then
// also on a plain-HTTP port for the tests' browser (printed first as
// `browser-entry <url>`): the tests' HTTP client has no TLS, while the
// calls under test (discovery, keys, token) go to the HTTPS issuer.
// Sign-in is the provider's own development interaction (any password).
//
// OP_CONFIG's optional "tamper" makes this provider hostile the way a
// compromised or misconfigured upstream (or an attacker in between) would
// be: the ID token of each token response is rewritten before it leaves
// (see `tamperings`), or the discovery document names another issuer. The
// provider signs with a key made here, so a rewritten token can be signed
// again with the real key (only the claim changed) or with a stranger's.
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OP_CONFIG ?? '{}');
const accounts = config.accounts ?? {};
const tamper = config.tamper ?? null;

const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const rsaKey = (kid) => {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, jwk: { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' } };
};
const signed = (header, payload, key) => {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
};
const publicJwk = ({ kid, kty, n, e, use, alg }) => ({ kid, kty, n, e, use, alg });

const real = rsaKey('op-key-1');
const stranger = rsaKey('op-key-1'); // same kid, not the provider's key
const next = rsaKey('op-key-2'); // the key a rotation brings
let tokensIssued = 0;
let rotated = false;

// Each rewrites one ID token ([header, payload] decoded) into another.
const now = () => Math.floor(Date.now() / 1000);
const tamperings = {
  // Signed again with the real key, unchanged: the harness itself is sound.
  resigned: (h, p) => signed(h, p, real.privateKey),
  'alg-none': (h, p) => `${b64({ ...h, alg: 'none' })}.${b64(p)}.`,
  'bad-signature': (h, p, token) => {
    const [head, body, sig] = token.split('.');
    const middle = Math.floor(sig.length / 2);
    const flipped = sig[middle] === 'A' ? 'B' : 'A';
    return `${head}.${body}.${sig.slice(0, middle)}${flipped}${sig.slice(middle + 1)}`;
  },
  'foreign-key': (h, p) => signed(h, p, stranger.privateKey),
  'unknown-kid': (h, p) => signed({ ...h, kid: 'never-published' }, p, stranger.privateKey),
  expired: (h, p) => signed(h, { ...p, iat: now() - 7200, exp: now() - 3600 }, real.privateKey),
  'wrong-audience': (h, p) => signed(h, { ...p, aud: 'another-relying-party' }, real.privateKey),
  'wrong-issuer': (h, p) => signed(h, { ...p, iss: 'https://evil.example' }, real.privateKey),
  'no-nonce': (h, p) => {
    const { nonce, ...rest } = p;
    return signed(h, rest, real.privateKey);
  },
  // From the second token on, signed with a new key the JWKS publishes from then on.
  rotate: (h, p) => {
    if (tokensIssued < 2) return signed(h, p, real.privateKey);
    rotated = true;
    return signed({ ...h, kid: next.jwk.kid }, p, next.privateKey);
  },
};

/// Rewrites the body `end` is about to send, when it is JSON `rewrite` changes.
function rewriting(res, rewrite) {
  const end = res.end.bind(res);
  res.end = (chunk, ...rest) => {
    try {
      const body = JSON.stringify(rewrite(JSON.parse(Buffer.from(chunk).toString('utf8'))));
      res.setHeader('content-length', Buffer.byteLength(body));
      return end(body, ...rest);
    } catch {
      return end(chunk, ...rest);
    }
  };
}

const server = config.tls ? https.createServer({ cert: config.tls.cert, key: config.tls.key }) : http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${config.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map((client) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...client,
    })),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups'],
    },
    // Scope-requested claims go in the ID token too (as Entra ID and Okta
    // can be configured to do), so the groups claim reaches the RP there.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: ['portcullis-test-upstream-cookie-key'] },
    jwks: { keys: [real.jwk] },
    async findAccount(_ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, email_verified: true, ...account }; } };
    },
  });
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  const callback = provider.callback();
  const announce = () => console.log(`listening ${issuer}`);
  if (config.tls) {
    const entry = http.createServer((req, res) => callback(req, res));
    entry.listen(0, '127.0.0.1', () => {
      console.log(`browser-entry http://127.0.0.1:${entry.address().port}`);
      announce();
    });
  }
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    if (tamper in tamperings && req.method === 'POST' && path === '/token') {
      rewriting(res, (answer) => {
        if (!answer.id_token) return answer;
        tokensIssued += 1;
        const [header, payload] = answer.id_token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
        return { ...answer, id_token: tamperings[tamper](header, payload, answer.id_token) };
      });
    } else if (tamper === 'rotate' && req.method === 'GET' && path === '/jwks') {
      rewriting(res, (set) => (rotated ? { keys: [...set.keys, publicJwk(next.jwk)] } : set));
    } else if (tamper === 'discovery-issuer' && path === '/.well-known/openid-configuration') {
      rewriting(res, (document) => ({ ...document, issuer: 'https://evil.example' }));
    }
    callback(req, res);
  });
  if (!config.tls) announce();
});
