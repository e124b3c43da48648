// Cordon, uncordon and drain (admins only; the caller hides them from everyone else).
import { send } from '../api.js';
import { ConfirmButton } from '../components.js';
import type { NodeJson } from '../types.js';

export function NodeActions(props: { node: NodeJson; done: () => void }) {
  const name = props.node.name;
  const path = `/nodes/${encodeURIComponent(name)}`;
  return (
    <span class="node-actions">
      {props.node.cordoned ? (
        <ConfirmButton label="Uncordon" question={`Uncordon ${name}? New work may be placed on it again.`} action={() => send('POST', `${path}/uncordon`)} done={props.done} />
      ) : (
        <ConfirmButton label="Cordon" question={`Cordon ${name}? Nothing new is placed on it; what runs there keeps running.`} action={() => send('POST', `${path}/cordon`)} done={props.done} />
      )}
      <ConfirmButton label="Drain" danger question={`Drain ${name}? It is cordoned and its allocations are moved elsewhere.`} action={() => send('POST', `${path}/drain`)} done={props.done} />
    </span>
  );
}
