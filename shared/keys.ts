// The store's key layout, in one place. Everything mlfleet writes lives under /mlfleet/.
export const ROOT = '/mlfleet/';

export const keys = {
  electionPrefix: `${ROOT}election/coordinator`,
  coordinatorsPrefix: `${ROOT}coordinators/`,
  coordinator: (id: string) => `${ROOT}coordinators/${id}`,
  nodesPrefix: `${ROOT}nodes/`,
  node: (name: string) => `${ROOT}nodes/${name}`,
};
