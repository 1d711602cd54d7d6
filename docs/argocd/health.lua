-- Argo CD health check for cutover.dev/UpgradePlan (docs/argocd.md explains each outcome).
-- Argo CD runs this in gopher-lua (Lua 5.1): `obj` is the live object, the result is a table
-- {status, message}. tests/packaging/argocd.rs runs it against sample statuses.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for status"
  return hs
end

local message = status.message or ""
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  -- A spec change (e.g. spec.traffic: blue) that cutover has not acted on yet.
  hs.status = "Progressing"
  hs.message = "Waiting for cutover to observe generation " .. generation
  return hs
end

-- These two need a person even while the plan is otherwise "running".
for _, ctype in ipairs({ "MigrationLockStale", "DataDiverged", "RollbackBlocked" }) do
  local c = condition(status, ctype)
  if c ~= nil and c.status == "True" then
    hs.status = "Degraded"
    hs.message = ctype .. ": " .. (c.message or "")
    return hs
  end
end

local phase = status.phase
if phase == "Succeeded" or phase == "Rehearsed" or phase == "RolledBack" then
  -- RolledBack is only reached by a requested rollback (spec.traffic: blue), which is the
  -- declared state; a failure ends in Failed instead.
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
  if status.failure ~= nil then
    message = status.failure.reason .. " in " .. status.failure.phase .. ": " .. status.failure.message
  end
elseif phase == "RollingBack" and status.failure ~= nil then
  -- Restoring the old version after a failure: it will end Failed.
  hs.status = "Degraded"
  message = "Rolling back after " .. status.failure.reason .. ": " .. status.failure.message
elseif phase == "AwaitingPromotion" then
  hs.status = "Suspended"
else
  local progressing = condition(status, "Progressing")
  if progressing ~= nil and progressing.status == "False" and progressing.reason == "Suspended" then
    hs.status = "Suspended"   -- spec.suspend: true
  else
    hs.status = "Progressing"
  end
end
if message == "" then
  message = phase
end
hs.message = message
return hs
