-- Argo CD health check for modeldeploy.io/ModelDeployment (Lua 5.1, as Argo CD's gopher-lua runs it).
--
-- Install: put this file under the key
--   resource.customizations.health.modeldeploy.io_ModelDeployment
-- of the argocd-cm ConfigMap (charts/modeldeploy/docs/argocd-health.md shows the ConfigMap).
--
-- It reads the kstatus conditions the operator writes (Ready / Reconciling / Stalled, each with
-- observedGeneration), so Argo CD, Flux health checks (kstatus) and `kubectl wait --for=condition=Ready`
-- give the same answer:
--   status not written yet, or metadata.generation not yet observed   -> Progressing
--   Stalled=True  (rolled back, failed and held for a human, invalid)    -> Degraded
--   Reconciling=True and reason Paused (a human paused the rollout)      -> Suspended
--     or AwaitingApproval (a webhook gate, e.g. the sign-off, must say yes)
--   Reconciling=True (first version starting, rollout in progress)       -> Progressing
--   Ready=True    (spec.model.version serves all live traffic)           -> Healthy
--   anything else                                                        -> Progressing
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function say(status, message)
  hs.status = status
  hs.message = message
  return hs
end

if obj.status == nil then
  return say("Progressing", "waiting for the operator to observe the ModelDeployment")
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration ~= generation then
  return say("Progressing", "waiting for the operator to observe generation " .. tostring(generation))
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  return say("Degraded", (stalled.reason or "Stalled") .. ": " .. (stalled.message or ""))
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  if reconciling.reason == "Paused" or reconciling.reason == "AwaitingApproval" then
    return say("Suspended", reconciling.message or "rollout paused")
  end
  return say("Progressing", reconciling.message or "rollout in progress")
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    return say("Progressing", "waiting for the operator to observe generation " .. tostring(generation))
  end
  return say("Healthy", ready.message or "ready")
end
if ready ~= nil then
  return say("Progressing", ready.message or "not ready")
end
return say("Progressing", obj.status.message or "waiting for the operator's conditions")
