-- Argo CD health check for rebound.dev/BallSession (argocd-cm key
-- resource.customizations.health.rebound.dev_BallSession; docs/install.md, "GitOps").
-- A session runs to completion: Progressing while it runs (or waits for room),
-- Healthy once it Succeeded, Degraded once it Failed; the message is the session's own.
hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status ~= nil and obj.status.phase ~= nil then
  hs.message = obj.status.message or obj.status.phase
  if obj.status.phase == "Succeeded" then
    hs.status = "Healthy"
  elseif obj.status.phase == "Failed" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
end
return hs
