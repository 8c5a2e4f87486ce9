// An OpenID Connect provider for the tests of the API's platform tokens (api.uaa): the
// `oidc-provider` package, issuing JWT access tokens by the client credentials grant
// (the UAA's password grant of the dashboard docs is not there; the claims checked are
// the same). Usage: node oidc.mjs PORT
//
// Keys: one RSA (kid rsa-1, RS256) and one P-256 (kid ec-1, ES256), new at every start,
// published at /jwks. Clients (secret "secret"): `backup-client`, and `short-lived`,
// whose tokens live 1 second. Resources (the `resource` parameter): https://backup.test
// (the default; aud "service-backup", RS256), https://backup-es.test (same audience,
// ES256), https://other.test (aud "other"). Scopes: cloud_controller.read,
// cloud_controller.write, backup.manage.
//
// Two test routes help forge tokens: /test/public.pem (the RSA key's public half, the
// "secret" of the HMAC confusion) and /test/foreign-token (a token with the right claims
// signed by an RSA key that /jwks does not publish, kid not-published).
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const foreign = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = (key, kid, alg) => ({ ...key.export({ format: 'jwk' }), kid, alg, use: 'sig' });
const scope = 'cloud_controller.read cloud_controller.write backup.manage';
const resources = {
  'https://backup.test': { audience: 'service-backup', alg: 'RS256' },
  'https://backup-es.test': { audience: 'service-backup', alg: 'ES256' },
  'https://other.test': { audience: 'other', alg: 'RS256' },
};

const provider = new Provider(issuer, {
  jwks: { keys: [jwk(rsa.privateKey, 'rsa-1', 'RS256'), jwk(ec.privateKey, 'ec-1', 'ES256')] },
  clients: ['backup-client', 'short-lived'].map((id) => ({
    client_id: id,
    client_secret: 'secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  })),
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://backup.test',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator, client) => {
        const r = resources[indicator];
        if (!r) throw new Error(`unknown resource ${indicator}`);
        return {
          audience: r.audience,
          scope,
          accessTokenFormat: 'jwt',
          accessTokenTTL: client.clientId === 'short-lived' ? 1 : 600,
          jwt: { sign: { alg: r.alg } },
        };
      },
    },
  },
});

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
function foreignToken() {
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'RS256', typ: 'at+jwt', kid: 'not-published' });
  const body = b64({ iss: issuer, aud: 'service-backup', scope, iat: now, exp: now + 600, sub: 'backup-client', client_id: 'backup-client' });
  const sig = crypto.sign('sha256', Buffer.from(`${head}.${body}`), foreign.privateKey).toString('base64url');
  return `${head}.${body}.${sig}`;
}

const callback = provider.callback();
http.createServer((req, res) => {
  if (req.url === '/test/public.pem') {
    res.end(rsa.publicKey.export({ format: 'pem', type: 'spki' }));
  } else if (req.url === '/test/foreign-token') {
    res.end(foreignToken());
  } else {
    callback(req, res);
  }
}).listen(port, '127.0.0.1');
