-- Argo CD health of a Portcullis AccessRequest (iam.portcullis.dev). It reads only
-- what the operator writes: status.observedGeneration, the conditions (Ready,
-- Filed) and the phase mirrored from the store. Runs without Lua's standard
-- libraries, as an argocd-cm customization does.
local hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Portcullis operator to file this AccessRequest"
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
-- A spec that cannot be filed (unknown role or requester, too long): nothing
-- was stored; someone has to file a corrected request.
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
local phase = status.phase
if phase == nil or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "Waiting for approvers"
  return hs
end
if phase == "Denied" then
  hs.status = "Degraded"
  hs.message = "Denied by " .. (status.decidedBy or "an approver")
  return hs
end
hs.status = "Healthy"
if phase == "Approved" then
  hs.message = "Approved until " .. (status.expiresAt or "its expiry")
else
  hs.message = phase
end
return hs
