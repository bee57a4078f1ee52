// A real OpenID provider for the single sign-on tests: panva's
// oidc-provider (OpenID Certified), started by tests/support/upstream_op.rs.
// Its configuration comes as JSON in OP_CONFIG:
//   { "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }],
//     "accounts": { "<login>": { "email": ..., "name": ..., "groups": [...] } } }
// It listens on 127.0.0.1 on a free port and prints `listening <issuer>`.
// Sign-in is the provider's own development interaction (any password).
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OP_CONFIG ?? '{}');
const accounts = config.accounts ?? {};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
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
    async findAccount(_ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, email_verified: true, ...account }; } };
    },
  });
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});
