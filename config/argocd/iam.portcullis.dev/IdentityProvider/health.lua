-- Argo CD health of a Portcullis IdentityProvider (iam.portcullis.dev). It reads only
-- what the operator writes: status.observedGeneration and the conditions
-- (metav1.Condition: Ready, plus specific ones). Runs without Lua's standard
-- libraries, as an argocd-cm customization does.
local hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Portcullis operator to report on this IdentityProvider"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Portcullis operator to reconcile generation " .. generation
  return hs
end
local conditions = {}
for _, condition in ipairs(status.conditions) do
  conditions[condition.type] = condition
end
local ready = conditions["Ready"]
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Portcullis operator to decide whether this IdentityProvider is Ready"
  return hs
end
-- Every reason for Ready=False needs someone to act (a manifest, a referenced
-- Secret, the database): the operator keeps retrying, but it is not in effect.
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
hs.status = "Healthy"
hs.message = "Reconciled"
local sync = status.scimSync
if status.scimEndpoint ~= nil then
  hs.message = "SCIM at " .. status.scimEndpoint
  if sync ~= nil then
    hs.message = hs.message .. "; " .. sync.requests .. " requests, " .. sync.errors .. " errors, " ..
      sync.usersProvisioned .. " users and " .. sync.groupsProvisioned .. " groups provisioned"
    if sync.lastError ~= nil then
      hs.message = hs.message .. "; last error at " .. (sync.lastErrorTime or "?") .. ": " .. sync.lastError
    end
  end
end
local warnings = conditions["Warnings"]
if warnings ~= nil and warnings.status == "True" then
  hs.message = hs.message .. "; warning " .. warnings.reason .. ": " .. (warnings.message or "")
end
return hs
