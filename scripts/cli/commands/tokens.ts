// `mlfleetctl tokens …`: bearer tokens (admin only). `tokens create` is the one command that
// prints a secret; the coordinator keeps only its hash, so nothing can show it again.
import { Option, type Command } from 'commander';
import { withContext } from '../context.js';
import { durationFlag } from '../flags.js';
import { tokenCreatedView, tokenListView, tokenRevokedView } from '../views/tokens.js';

const ROLES = ['admin', 'developer', 'consumer', 'join'];
/** Join tokens let an agent register a node; they belong to no tenant. */
const TENANTLESS_ROLES = ['join'];
/** A join token expires after a day unless --ttl says otherwise (kubeadm's bootstrap tokens do the same). */
const JOIN_TTL_MS = 24 * 3_600_000;

export function registerTokenCommands(program: Command): void {
  const tokens = program.command('tokens').description('API tokens');

  tokens
    .command('create')
    .description('create a token and print its secret, once')
    .option('--tenant <tenant>', 'the tenant the token acts for (not for --role join)')
    .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
    .option('--description <text>', 'what the token is for')
    .addOption(new Option('--ttl <duration>', 'expire after this long (30d, 12h); default: 24h for join tokens, never for others').argParser(durationFlag('--ttl', 'leave --ttl out for a token that does not expire')))
    .option('--single-use', 'join tokens: the first node that joins with it uses it up')
    .action((options: { tenant?: string; role: string; description?: string; ttl?: number; singleUse?: boolean }, command: Command) => {
      const tenantless = TENANTLESS_ROLES.includes(options.role);
      if (tenantless && options.tenant !== undefined) command.error(`a ${options.role} token belongs to no tenant; leave out --tenant`);
      if (!tenantless && !options.tenant) command.error(`a ${options.role} token acts for a tenant; pass --tenant NAME`);
      if (options.singleUse && options.role !== 'join') command.error('--single-use is for join tokens only (--role join)');
      return withContext(command, async (ctx) => {
        const created = await ctx.client().createToken({
          tenant: options.tenant ?? '',
          role: options.role,
          description: options.description ?? '',
          ttlMs: options.ttl ?? (options.role === 'join' ? JOIN_TTL_MS : 0),
          singleUse: options.singleUse ?? false,
        });
        ctx.print(tokenCreatedView(created));
        if (ctx.output === 'table') {
          process.stderr.write('mlfleetctl: the token is shown only this once; store it now (mlfleetctl reads ~/.config/mlfleet/token)\n');
        }
      });
    });

  tokens
    .command('ls')
    .description('list valid tokens (never their secrets)')
    .option('--tenant <tenant>', "only this tenant's tokens")
    .option('--all', 'include revoked tokens')
    .action((options: { tenant?: string; all?: boolean }, command: Command) =>
      withContext(command, async (ctx) => {
        const { tokens: list } = await ctx.client().listTokens({ tenant: options.tenant ?? '', includeRevoked: options.all ?? false });
        ctx.print(tokenListView(list));
      }),
    );

  tokens
    .command('revoke')
    .description("revoke a token at once; a node credential also ends that node's session, a join token also revokes the node credentials it admitted")
    .argument('<id>', 'token id (from tokens ls)')
    .action((id: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(tokenRevokedView(await ctx.client().revokeToken(id)))),
    );
}
