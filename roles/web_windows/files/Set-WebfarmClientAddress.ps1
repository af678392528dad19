#Requires -Version 5.1
<#
.SYNOPSIS
Let the site's web.config set the client-address server variables, and log
the client address those rules set.

.DESCRIPTION
Run by colo.webfarm.web_windows through ansible.windows.win_powershell, in
the same way as Set-WebfarmFastCgi.ps1:
reads the configuration with Microsoft.Web.Administration, changes only what
differs, commits only then, and sets $Ansible.Changed accordingly; check mode
(-WhatIf) writes nothing.

- system.webServer/rewrite/allowedServerVariables at <location path="SiteName">
  in applicationHost.config: URL Rewrite refuses (500.50) a rule in
  web.config that sets a server variable not listed there, and the section
  cannot be set from web.config itself. Exactly ServerVariables are listed.
- The site's logFile/customFields (IIS 8.5+ enhanced logging): one field
  LogFieldName with the server variable REMOTE_ADDR, read when the request
  is logged, that is after the web.config rules replaced it with the client
  address from a trusted proxy's X-Forwarded-For. (c-ip keeps the TCP peer:
  the log shows both the balancer and the client.)
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)][string]$SiteName,
    [Parameter(Mandatory = $true)][string[]]$ServerVariables,
    [string]$LogFieldName = 'X-Webfarm-Client',
    [string]$LogSourceName = 'REMOTE_ADDR'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

$changes = New-Object System.Collections.Generic.List[string]

Add-Type -Path (Join-Path $env:windir 'System32\inetsrv\Microsoft.Web.Administration.dll')
$manager = New-Object Microsoft.Web.Administration.ServerManager
try {
    $site = $manager.Sites[$SiteName]
    if (-not $site) {
        throw "IIS site '$SiteName' does not exist: create it first"
    }
    $appHost = $manager.GetApplicationHostConfiguration()

    # ---- server variables web.config may set ------------------------------------
    $allowed = $appHost.GetSection('system.webServer/rewrite/allowedServerVariables', $SiteName).GetCollection()
    $present = @($allowed | ForEach-Object { [string]$_.GetAttributeValue('name') })
    foreach ($name in $ServerVariables) {
        if ($present -notcontains $name) {
            $entry = $allowed.CreateElement('add')
            $entry.SetAttributeValue('name', $name)
            $allowed.Add($entry) | Out-Null
            $changes.Add("allowedServerVariables $name added for site $SiteName")
        }
    }
    $extra = @($allowed | Where-Object { $ServerVariables -notcontains [string]$_.GetAttributeValue('name') })
    foreach ($entry in $extra) {
        $changes.Add("allowedServerVariables $($entry.GetAttributeValue('name')) removed for site $SiteName")
        $allowed.Remove($entry)
    }

    # ---- the client address in the IIS log -----------------------------------------
    $fields = $site.LogFile.GetChildElement('customFields').GetCollection()
    $field = $null
    foreach ($item in $fields) {
        if ([string]$item.GetAttributeValue('logFieldName') -eq $LogFieldName) { $field = $item }
    }
    if (-not $field) {
        $field = $fields.CreateElement('add')
        $field.SetAttributeValue('logFieldName', $LogFieldName)
        $field.SetAttributeValue('sourceName', $LogSourceName)
        $field.SetAttributeValue('sourceType', 'ServerVariable')
        $fields.Add($field) | Out-Null
        $changes.Add("log field $LogFieldName ($LogSourceName) added to site $SiteName")
    }
    elseif ([string]$field.GetAttributeValue('sourceName') -ne $LogSourceName) {
        $field.SetAttributeValue('sourceName', $LogSourceName)
        $changes.Add("log field $LogFieldName now logs $LogSourceName")
    }

    if ($changes.Count -gt 0 -and $PSCmdlet.ShouldProcess("IIS configuration", ($changes -join '; '))) {
        $manager.CommitChanges()
    }
}
finally {
    $manager.Dispose()
}

$Ansible.Changed = $changes.Count -gt 0
$Ansible.Result = @{ changes = @($changes) }
