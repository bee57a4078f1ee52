// The oidc-provider peer of benches/token_load.rs: one issuer on loopback,
// configured like a Portcullis organization for the grants the bench drives.
//
//   node server.mjs <port> [refresh-token-count]      (or PORT / REFRESH_TOKENS)
//
// - JWT access tokens (RFC 9068, resource indicators with accessTokenFormat
//   'jwt') signed ES256 with a key generated at start; 300 s lifetime.
// - One confidential client `bench` (client_secret_basic) allowed
//   client_credentials, authorization_code and refresh_token.
// - Refresh tokens: authorization_code needs a browser, so the server seeds
//   <refresh-token-count> grants (openid offline_access + the API resource)
//   through the provider's own models and adapter, each with one refresh
//   token that the token endpoint then rotates as it would after a code
//   exchange. It prints one line `refresh <token>` per seed, then
//   `ready <issuer url>` once listening.
// - Production settings: NODE_ENV=production, no dev interactions, no
//   request logging; the default in-memory adapter (no database round trip,
//   which favours oidc-provider against our SQLite store).
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

process.env.NODE_ENV = 'production';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const refreshTokenCount = Number(process.argv[3] ?? process.env.REFRESH_TOKENS ?? 0);
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;

export const CLIENT_ID = 'bench';
export const CLIENT_SECRET = 'bench-client-secret-0123456789abcdef';
export const RESOURCE = 'https://api.bench.example';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://app.bench.example/callback'],
      id_token_signed_response_alg: 'ES256',
      scope: 'openid offline_access api',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['bench-cookie-key-not-used-by-the-token-endpoint'] },
  findAccount: async (_ctx, accountId) => ({ accountId, claims: async () => ({ sub: accountId }) }),
  scopes: ['openid', 'offline_access', 'api'],
  rotateRefreshToken: true,
  ttl: { AccessToken: 300, ClientCredentials: 300, IdToken: 300, RefreshToken: 86400, Grant: 86400 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== RESOURCE) throw new Error(`unknown resource ${resource}`);
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

// What a code exchange with `openid offline_access api` for RESOURCE leaves
// behind: a grant and one refresh token bound to it.
async function seedRefreshToken(n) {
  const client = await provider.Client.find(CLIENT_ID);
  const accountId = `user-${n}`;
  const grant = new provider.Grant({ accountId, clientId: CLIENT_ID });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(RESOURCE, 'api');
  const grantId = await grant.save();
  const refreshToken = new provider.RefreshToken({
    accountId,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'openid offline_access api',
    resource: RESOURCE,
    authTime: Math.floor(Date.now() / 1000),
    iiat: Math.floor(Date.now() / 1000),
    expiresWithSession: false,
  });
  return refreshToken.save();
}

const lines = [];
for (let n = 0; n < refreshTokenCount; n += 1) {
  lines.push(`refresh ${await seedRefreshToken(n)}`);
}

const server = provider.listen(port, host, () => {
  const { port: bound } = server.address();
  // The issuer is fixed before listening; with port 0 the caller reads the bound port here.
  lines.push(`ready http://${host}:${bound}`);
  process.stdout.write(`${lines.join('\n')}\n`);
});
server.keepAliveTimeout = 60_000;

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
